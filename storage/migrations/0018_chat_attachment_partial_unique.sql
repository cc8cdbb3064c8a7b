-- A message's attachment is unique among the messages that carry one. The unique constraint
-- indexed every message, NULL included, so a plain text message (nearly all of them) wrote an
-- index entry that nothing ever looks up; the partial index holds only messages with an
-- attachment. One index entry fewer per message: about 4% of the write-ahead log a message
-- writes (`python -m bench.chat_store`), which every commit waits to flush. Like every migration
-- it runs in one transaction, so chat writes wait while the index is built: one scan of
-- chat_messages, holding only the few messages with an attachment.
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_attachment_id_key;
CREATE UNIQUE INDEX chat_messages_attachment_id_key ON chat_messages (attachment_id)
    WHERE attachment_id IS NOT NULL;
