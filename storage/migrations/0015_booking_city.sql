-- The town of each booking, for the dashboard's "filter by city" (and reports). New bookings
-- take it from the app's geocoder, or read it off the address (core.bookings.city_of); existing
-- rows get the same reading of their address here.
ALTER TABLE bookings ADD COLUMN city varchar(100);

UPDATE bookings SET city = NULLIF(btrim(regexp_replace(
        split_part(address, ',', array_length(string_to_array(address, ','), 1)),
        '\s*\m[A-Za-z]{1,2}[0-9][A-Za-z0-9]?\s*[0-9][A-Za-z]{2}\M\s*$', '')), '')
  WHERE address <> '';
UPDATE bookings SET city = NULL WHERE city ~ '[0-9]';

CREATE INDEX bookings_city_starts_at_idx ON bookings (city, starts_at);
