"""Rules: directory, devices, network map, policy, categories, identity and the policy engine."""
