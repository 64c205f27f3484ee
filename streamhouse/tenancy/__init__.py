"""Tenancy's pure rules: org names and the scoping that keeps orgs apart, API keys and their
hashes, SCRAM credentials, Kafka's ACL model and client quotas. No IO, no clocks, no
randomness: random bytes and the time come in as arguments."""
