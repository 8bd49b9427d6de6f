-- Ground truth of the sample world: queries and judged items per kind and pattern.
SELECT query_kind, coalesce(pattern, '-') AS pattern,
       count(DISTINCT query_id) AS queries, count(*) AS judged_items,
       round(avg(grade), 2) AS mean_grade
FROM qrels
GROUP BY query_kind, pattern
ORDER BY query_kind, pattern;
