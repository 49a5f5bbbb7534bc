"""Data quality you can measure: the definitions (`generation.quality.definitions`: verified, grounded,
leaked, duplicates) and the audit over a dataset folder (`generation.quality.audit`: per-source tables,
examples, the card's Quality section, `mmat audit`)."""
