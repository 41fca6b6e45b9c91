-- Placeholder so this branch's 0005 applies in order; migration 0004 belongs to the
-- application-side change (saga outputs) and replaces this file when both are merged.
SELECT 1;
