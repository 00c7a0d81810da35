"""Manager figures (/stats, charts, exports), by subject: ``periods`` (what a manager asks for),
``figures`` (the counts), ``series`` (the chart's days), ``exports`` (rows for spreadsheets),
and ``counting`` (the SQL they share)."""
