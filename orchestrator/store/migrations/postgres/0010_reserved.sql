-- Reserved: this number belongs to work on the event feeds merged separately; this
-- placeholder (a no-op) keeps the numbering gapless until then and is replaced by it.
SELECT 1;
