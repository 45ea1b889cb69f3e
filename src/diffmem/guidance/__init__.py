"""Anti-Memorization Guidance terms and threshold schedules."""
