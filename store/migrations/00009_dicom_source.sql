-- +goose Up
-- Who stored each DICOM instance, and a digest of its data set, so that a
-- C-STORE replacing an existing SOP instance with other data from another
-- calling AE can be refused (dicom.Config.Overwrite). source_ae is the
-- calling AE title of a C-STORE, '' for DICOMweb and rows stored before
-- this migration; digest is the SHA-256 of the data set as received (the
-- bytes after the file meta group), computed only where a policy may
-- refuse: NULL for rows stored before, by DICOMweb or under "any".
ALTER TABLE dicom_instances
    ADD COLUMN source_ae text NOT NULL DEFAULT '',
    ADD COLUMN digest    bytea;

-- dicom_refuse_overwrite aborts the ingest batch (and so its study and
-- series updates) when the instance upsert was refused by the policy.
-- +goose StatementBegin
CREATE FUNCTION dicom_refuse_overwrite(sop text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dicom: SOP instance % exists with other data from another source', sop
        USING ERRCODE = 'unique_violation', CONSTRAINT = 'dicom_instances_overwrite';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION dicom_refuse_overwrite(text);
ALTER TABLE dicom_instances DROP COLUMN digest, DROP COLUMN source_ae;
