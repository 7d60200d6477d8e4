-- Trips per hour of the day, with the average fare, tip and total.
SELECT CAST(date_part('hour', tpep_pickup_datetime) AS INT) AS hour,
       count(*) AS trips,
       avg(fare_amount) AS avg_fare,
       avg(tip_amount) AS avg_tip,
       avg(total_amount) AS avg_total
FROM trips
GROUP BY 1
ORDER BY 1
