-- Input of stage `cot`: each extracted keyword list, with its query.
select k.query_id, r.query, k.keywords
from keywords k
join reasoning r on r.query_id = k.query_id
where {{ shard_filter("k.query_id") }}
order by k.query_id
