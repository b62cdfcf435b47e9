"""The verbs, orchestration only: save (and its rebuild check), load, inspect,
verify, upgrade and diff, with the comparisons and drift reports they share."""
