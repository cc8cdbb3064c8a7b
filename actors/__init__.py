"""Ray actors: sharded virtual actors for conversations, presence and spatial indexes."""
