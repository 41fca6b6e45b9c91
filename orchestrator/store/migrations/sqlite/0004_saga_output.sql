-- A COMPLETED saga's output (issue 13): the definition's output message built from the
-- step replies, stored as a serialized google.protobuf.Any when the saga completes.

ALTER TABLE sagas ADD COLUMN output BLOB;
