-- Chat attachments follow completion evidence (0009) and profile photos (0012): an upload waits
-- as its original (EXIF and GPS included, never served) until the images job has made the
-- upright, EXIF-free copy and thumbnails; `storage_key` then names that copy, and what the EXIF
-- said (capture time, place) is kept here. A message carries at most one attachment, and an
-- attachment belongs to at most one message (the unique key is what answers a reuse with 409).

CREATE TABLE chat_attachments (
    id               uuid PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    uploaded_by_id   uuid REFERENCES users (id) ON DELETE SET NULL,
    storage_key      varchar(300) NOT NULL,
    content_type     varchar(64) NOT NULL,
    size_bytes       integer NOT NULL CHECK (size_bytes > 0),
    sha256           varchar(64) NOT NULL,
    status           varchar(16) NOT NULL DEFAULT 'processing'
                     CHECK (status IN ('processing', 'ready', 'refused')),
    refused_reason   text,
    width            integer CHECK (width > 0),
    height           integer CHECK (height > 0),
    captured_at      timestamptz,
    gps_lat          double precision CHECK (gps_lat BETWEEN -90 AND 90),
    gps_lng          double precision CHECK (gps_lng BETWEEN -180 AND 180),
    thumbnails       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"160": key, ...}
    processed_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_attachments_conversation_idx ON chat_attachments (conversation_id, created_at);

ALTER TABLE chat_messages
    ADD COLUMN attachment_id uuid UNIQUE REFERENCES chat_attachments (id) ON DELETE SET NULL;
