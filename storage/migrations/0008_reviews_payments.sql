-- Reviews of completed bookings, and the money follow-ups of payments: one row per Stripe
-- refund (so a replayed refund is counted once) and the retry schedule of settlements
-- (captures, fee captures, releases) that Stripe refused when the booking moved.

CREATE TABLE reviews (
    id            uuid PRIMARY KEY,
    booking_id    uuid NOT NULL UNIQUE REFERENCES bookings (id) ON DELETE CASCADE,
    client_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cleaner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rating        smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    text          text NOT NULL DEFAULT '',
    reply         text,
    replied_at    timestamptz,
    hidden_at     timestamptz,
    hidden_reason text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((reply IS NULL) = (replied_at IS NULL))
);
-- A cleaner's public reviews, newest first; and the aggregate's recount.
CREATE INDEX reviews_cleaner_visible_idx ON reviews (cleaner_id, created_at DESC, id DESC)
    WHERE hidden_at IS NULL;

CREATE TABLE booking_refunds (
    id                varchar(255) PRIMARY KEY,  -- Stripe's refund id
    booking_id        uuid NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    amount_minor      integer NOT NULL CHECK (amount_minor > 0),
    reason            text NOT NULL DEFAULT '',
    actor_id          uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_refunds_booking_idx ON booking_refunds (booking_id);

CREATE TABLE settle_retries (
    booking_id        uuid PRIMARY KEY REFERENCES bookings (id) ON DELETE CASCADE,
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz,  -- NULL: gave up after the last attempt; staff follow up
    last_error        text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settle_retries_due_idx ON settle_retries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
