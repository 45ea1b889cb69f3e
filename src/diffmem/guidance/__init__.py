"""Anti-Memorization Guidance: one configuration (`config.AMGConfig`), the training reference and the hook
built from it (`reference`), the sampler hook (`hook`), its terms (`terms`), threshold schedules
(`schedules`) and similarities (`similarity`)."""
