"""Message mappings and code tables, as data, with golden input and expected-output pairs."""
