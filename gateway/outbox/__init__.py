"""The transactional outbox: outbound messages stored with the change that caused them
(:mod:`.messages`), delivered with retries by the :mod:`.dispatcher`, administered
through :mod:`.cli` and :mod:`.api`."""
