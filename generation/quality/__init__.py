"""Data quality you can measure, split by job: what a good dialogue is (`definitions`: the dialogue views
and the leak judgement; `grounding`: targets, arithmetic and evidence; `evidence_kinds`: tool evidence vs
the source's own rationale, and answers after "I cannot confirm"), one row's judgement and the counts over
rows (`row_judgement`), reading shards (`shard_scan`), near-duplicates (`near_duplicates`, MinHash/LSH
with its settings), the dataset's report and the end of a run (`audit`), and the terminal tables
(`report`). The card's Quality section is rendered in `publishing.quality_section`; nothing here imports
`publishing/` or `viewer/` (a Hub store is passed in)."""
