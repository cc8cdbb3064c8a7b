-- Completion may change a booking's price (issue 4): the cleaner completes with the hours
-- actually worked, fewer than booked or up to SPOTLESS_BOOKING_MAX_EXTRA_HOURS more, re-quoted
-- at the booked rate. `hours` .. `amount_minor` then hold the final price (what is captured and
-- invoiced) and the `quoted_*` columns keep what the client agreed to when booking.
-- `held_minor` is what the card hold covers (the authorisation, raised by incremental
-- authorisations); `capture_shortfall_minor` is the part of the final price that could not be
-- captured because the card refused the increment (audited, announced, left to staff).

ALTER TABLE bookings
    ADD COLUMN quoted_hours            numeric(5, 2) NOT NULL DEFAULT 0,
    ADD COLUMN quoted_subtotal_minor   integer NOT NULL DEFAULT 0 CHECK (quoted_subtotal_minor >= 0),
    ADD COLUMN quoted_tax_minor        integer NOT NULL DEFAULT 0 CHECK (quoted_tax_minor >= 0),
    ADD COLUMN quoted_amount_minor     integer NOT NULL DEFAULT 0 CHECK (quoted_amount_minor >= 0),
    ADD COLUMN held_minor              integer NOT NULL DEFAULT 0 CHECK (held_minor >= 0),
    ADD COLUMN capture_shortfall_minor integer NOT NULL DEFAULT 0 CHECK (capture_shortfall_minor >= 0);

UPDATE bookings SET quoted_hours = hours, quoted_subtotal_minor = subtotal_minor, quoted_tax_minor = tax_minor,
                    quoted_amount_minor = amount_minor,
                    held_minor = CASE WHEN payment_intent_id IS NULL THEN 0 ELSE amount_minor END;
