-- Input of stage `retrieval_1` (set ①): each query as searched, without a CoT.
select query_id, query, '' as cot
from queries
where {{ shard_filter("query_id") }}
order by query_id
