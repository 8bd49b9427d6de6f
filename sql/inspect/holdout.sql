-- The held-out-by-need split of the sample world (holdout seed 0, the trainer's default): how
-- many needs and phrasings go to training, validation and evaluation. Run on data_samples/.
select holdout, count(distinct need_id) as needs, count(*) as phrasings
from (
    select need_id, lrem_holdout(need_id, phrasing, count(*) over (partition by need_id), 0) as holdout
    from needs
)
group by holdout
order by holdout;
