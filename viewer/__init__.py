"""`mmat view`: a trajectory browser over a dataset folder or a Hub repo (local web page or static export).

Guarantees:
- Lazy: opening a dataset reads only parquet footers; a page of the list reads only the row groups
  that hold its rows (`viewer.store`), so a 1M-row dataset opens about as fast as a 1K-row one.
- Read-only: nothing under the dataset folder or its work folder is written.
- Rows are untrusted text: the page builds every element with `textContent` (never `innerHTML` with
  row data), so a `<script>` or a `</THOUGHT>` in a row shows as text.

Modules: `parsed` (a row → its questions, steps and answers; the one place that reads a row's dialogue
structure), `view` (the JSON the page draws), `store` (shards, pages, filters), `workfolder`
(quarantine records and operator backends from the run's work folder), `server` (HTTP + JSON API),
`export` (the same page as static files), `static/` (HTML, JS, CSS).
"""
