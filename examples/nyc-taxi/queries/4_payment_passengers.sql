-- Payment type by passenger count, with the tip as a percentage of the fare.
SELECT payment_type,
       passenger_count,
       count(*) AS trips,
       100 * sum(tip_amount) / nullif(sum(fare_amount), 0) AS tip_pct
FROM trips
GROUP BY payment_type, passenger_count
ORDER BY payment_type NULLS LAST, passenger_count NULLS LAST
