-- Input of stage `relevance`: each pair of ② − ①, with the query and the item's title.
select g.query_id, g.item_id, g.score, c.query, i.title
from gain g
join cot c on c.query_id = g.query_id
join items i on i.item_id = g.item_id
where {{ shard_filter("g.query_id") }}
order by g.query_id, g.item_id
