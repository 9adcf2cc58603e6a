"""The revisions of the results store's schema, oldest first by their down_revision chain."""
