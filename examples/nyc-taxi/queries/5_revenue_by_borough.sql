-- Revenue per pickup borough (a join with the zone lookup table).
SELECT z."Borough" AS borough,
       count(*) AS trips,
       sum(t.total_amount) AS revenue,
       avg(t.trip_distance) AS avg_distance
FROM trips t
JOIN zones z ON t."PULocationID" = z."LocationID"
GROUP BY z."Borough"
ORDER BY revenue DESC, borough
