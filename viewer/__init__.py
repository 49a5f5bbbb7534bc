"""`mmat view`: a trajectory browser over a dataset folder or a Hub repo (local web page or static export).

Guarantees:
- Lazy: opening a dataset reads only parquet footers; a page of the list reads only the row groups
  that hold its rows (`viewer.store`), so a 1M-row dataset opens about as fast as a 1K-row one.
- Read-only: nothing under the dataset folder or its work folder is written.
- Rows are untrusted text: the page builds every element with `textContent` (never `innerHTML` with
  row data), so a `<script>` or a `</THOUGHT>` in a row shows as text.

Modules: `parsed` (a row → its questions, steps and answers, through the project's one RR/ORR
parser, `generation.dialogue_format`), `view` (the JSON the page draws), `store` (shards, pages,
filters), `workfolder` (quarantine records, and operator backends for rows that do not record them), `server` (HTTP + JSON API),
`export` (the same page as static files), `static/` (HTML, JS, CSS).
"""
