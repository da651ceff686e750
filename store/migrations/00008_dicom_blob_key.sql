-- +goose Up
-- The orphan-blob sweep (dicom.Service.SweepOrphans) asks, for each key in
-- the blob store, whether an instance names it.
CREATE UNIQUE INDEX dicom_instances_blob_key ON dicom_instances (blob_key);

-- +goose Down
DROP INDEX dicom_instances_blob_key;
