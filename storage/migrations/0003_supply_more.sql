-- When a cleaner's verification status last changed, so staff review the longest-waiting first.
-- A further document sent while a review is pending does not move the cleaner in the queue.

ALTER TABLE cleaner_profiles
    ADD COLUMN verification_changed_at timestamptz NOT NULL DEFAULT now();
UPDATE cleaner_profiles SET verification_changed_at = coalesce(verified_at, created_at);

DROP INDEX cleaner_profiles_verification_idx;
CREATE INDEX cleaner_profiles_verification_idx
    ON cleaner_profiles (verification_status, verification_changed_at, user_id);
