-- Completion evidence: the photos a cleaner takes of the finished job, one row per upload,
-- and what the images job read from each (capture time, GPS, size, thumbnails) once it ran.
-- The catalogue's photo requirement becomes opt-in: deep cleans and end-of-tenancy cleans,
-- where deposits and disputes turn on what the place looked like, require photos.

ALTER TABLE service_types ALTER COLUMN requires_photo_evidence SET DEFAULT false;
UPDATE service_types SET requires_photo_evidence = (id IN ('deep', 'end_of_tenancy'))
 WHERE id IN ('standard', 'deep', 'end_of_tenancy', 'office', 'oven', 'carpet');

CREATE TABLE booking_evidence (
    id              uuid PRIMARY KEY,
    booking_id      uuid NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    uploaded_by_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    -- the original until the images job has run, then its EXIF-free, upright copy
    storage_key     varchar(300) NOT NULL,
    content_type    varchar(64) NOT NULL,
    size_bytes      integer NOT NULL CHECK (size_bytes > 0),
    sha256          char(64) NOT NULL,  -- of the bytes the cleaner sent
    status          varchar(16) NOT NULL DEFAULT 'processing'
                    CHECK (status IN ('processing', 'ready', 'refused')),
    refused_reason  text,
    width           integer CHECK (width > 0),
    height          integer CHECK (height > 0),
    captured_at     timestamptz,  -- from EXIF; NULL when the camera did not say
    gps_lat         double precision CHECK (gps_lat BETWEEN -90 AND 90),
    gps_lng         double precision CHECK (gps_lng BETWEEN -180 AND 180),
    thumbnails      jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"160": key, "480": key, "1280": key}
    processed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_evidence_booking_idx ON booking_evidence (booking_id, created_at, id);
