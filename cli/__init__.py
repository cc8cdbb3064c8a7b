"""The `spotless` command: the embedded dev stack and each production process."""
