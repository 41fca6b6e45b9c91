-- Placeholder: version 0005 belongs to a change developed beside this one (migration
-- numbers are assigned per change). Delete this file when that migration lands.
SELECT 1;
