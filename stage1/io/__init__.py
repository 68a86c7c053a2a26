"""The only code that opens files: atomic storage, strict readers, manifests, lineage, the generation
journal, and the run directory (layout, lock, fingerprints)."""
