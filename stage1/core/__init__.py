"""The pure core: formatting, masking, text keys, splits, statistics, criteria, leakage matching and
the record schemas. Imports no torch, transformers, trl, peft, datasets or rich, and opens no file
(``tests/unit/core/test_purity.py`` proves it)."""
