"""Where files come from: local paths, hub repositories, the local hub cache."""
