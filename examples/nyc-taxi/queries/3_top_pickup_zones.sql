-- The ten pickup zones that earn the most.
SELECT z."Zone" AS zone,
       z."Borough" AS borough,
       count(*) AS trips,
       sum(t.total_amount) AS revenue
FROM trips t
JOIN zones z ON t."PULocationID" = z."LocationID"
GROUP BY z."Zone", z."Borough"
ORDER BY revenue DESC, zone
LIMIT 10
