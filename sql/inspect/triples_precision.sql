-- Precision of a run's triples against the sample world's graded judgements: a triple is right
-- when qrels grades its (query, item) 1 or more (3 exact, 2 good, 1 partial). A measure of the
-- teacher behind the run, never a training signal. Needs `qrels` in the run directory (the
-- reference-triples target copies it there).
SELECT count(*) AS triples,
       count(DISTINCT t.query_id) AS queries,
       sum(CASE WHEN q.grade >= 1 THEN 1 ELSE 0 END) AS graded_relevant,
       sum(CASE WHEN q.grade = 3 THEN 1 ELSE 0 END) AS graded_exact,
       round(avg(CASE WHEN q.grade >= 1 THEN 1.0 ELSE 0.0 END), 3) AS precision
FROM triples t
LEFT JOIN qrels q ON q.query_id = t.query_id AND q.item_id = t.item_id
