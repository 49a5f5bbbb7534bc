"""How the project counts text tokens without a tokenizer: a word (`\\w+`) or one other non-space
character. One definition, so the card's token columns (`publishing.card_stats`) and the audit's ORR/RR
token ratio (`generation.quality.shard_scan`) count the same tokens (it lives in `generation/` because the
audit may not import `publishing/`)."""
TOKEN_PATTERN = r"\w+|[^\w\s]"
