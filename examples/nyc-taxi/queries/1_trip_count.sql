-- The reference app's query (Spark's `input_df.count()`): every trip.
SELECT count(*) AS trips
FROM trips
