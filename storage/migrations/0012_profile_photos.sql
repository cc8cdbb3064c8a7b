-- Profile photos follow completion evidence: an upload waits in `photo_upload_key` (the
-- original, EXIF and GPS included, never served) until the images job has made its upright,
-- EXIF-free copy and thumbnails; `photo_path` then names that copy, the only one served, and
-- what the EXIF said (capture time, place) is kept here. A later upload keeps the photo in
-- `photo_path` shown until its own copy is ready, then the job swaps and deletes the old files.

ALTER TABLE cleaner_profiles
    ADD COLUMN photo_upload_key     varchar(300),
    ADD COLUMN photo_status         varchar(16)
               CHECK (photo_status IN ('processing', 'ready', 'refused')),  -- of the latest upload
    ADD COLUMN photo_refused_reason text,
    ADD COLUMN photo_content_type   varchar(64),
    ADD COLUMN photo_thumbnails     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"160": key, ...}
    ADD COLUMN photo_width          integer CHECK (photo_width > 0),
    ADD COLUMN photo_height         integer CHECK (photo_height > 0),
    ADD COLUMN photo_captured_at    timestamptz,
    ADD COLUMN photo_gps_lat        double precision CHECK (photo_gps_lat BETWEEN -90 AND 90),
    ADD COLUMN photo_gps_lng        double precision CHECK (photo_gps_lng BETWEEN -180 AND 180),
    ADD COLUMN photo_processed_at   timestamptz;

-- Photos uploaded before this point are originals: they wait for the job again, and get an event.
UPDATE cleaner_profiles SET photo_upload_key = photo_path, photo_path = NULL, photo_status = 'processing'
 WHERE photo_path IS NOT NULL;
INSERT INTO outbox (event_id, type, payload)
SELECT gen_random_uuid(), 'media.image_uploaded',
       jsonb_build_object('image_id', split_part(split_part(photo_upload_key, '/', 4), '.', 1),
                          'key', photo_upload_key, 'kind', 'profile_photo', 'owner_id', user_id::text)
  FROM cleaner_profiles WHERE photo_upload_key IS NOT NULL;
