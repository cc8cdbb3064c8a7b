"""Pure domain rules, settings, errors and names. Nothing in `core` performs I/O."""
