-- +goose Up
-- DICOM instances received by C-STORE or STOW-RS. The Part-10 files live in a
-- blob store (blob_key); these tables hold what QIDO-RS and C-FIND match on
-- and what the ImagingStudy sync reads. One row per UID: receiving an
-- instance again replaces its row (and its blob).
CREATE TABLE dicom_studies (
    study_uid       text        PRIMARY KEY,
    patient_id      text        NOT NULL DEFAULT '',
    issuer          text        NOT NULL DEFAULT '', -- IssuerOfPatientID
    patient_name    text        NOT NULL DEFAULT '', -- PN as received (^ components)
    birth_date      text        NOT NULL DEFAULT '', -- DA
    sex             text        NOT NULL DEFAULT '',
    study_date      text        NOT NULL DEFAULT '', -- DA, YYYYMMDD: compares as text
    study_time      text        NOT NULL DEFAULT '',
    accession       text        NOT NULL DEFAULT '',
    study_id        text        NOT NULL DEFAULT '',
    description     text        NOT NULL DEFAULT '',
    referring       text        NOT NULL DEFAULT '',
    tz_offset       text        NOT NULL DEFAULT '', -- TimezoneOffsetFromUTC
    -- The ImagingStudy was built from the instances with seq <= synced_seq;
    -- force_sync marks a study that lost an instance to another study.
    -- Ingest holds FOR SHARE on the study row (ingests run in parallel),
    -- the ImagingStudy sync FOR UPDATE, so a sync sees every instance whose
    -- seq is below the highest one it reads.
    synced_seq      bigint      NOT NULL DEFAULT 0,
    force_sync      boolean     NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dicom_studies_patient ON dicom_studies (patient_id);
CREATE INDEX dicom_studies_date ON dicom_studies (study_date);
CREATE INDEX dicom_studies_accession ON dicom_studies (accession);
CREATE INDEX dicom_studies_forced ON dicom_studies (study_uid) WHERE force_sync;

CREATE TABLE dicom_series (
    series_uid    text   PRIMARY KEY,
    study_uid     text   NOT NULL REFERENCES dicom_studies ON DELETE CASCADE,
    modality      text   NOT NULL DEFAULT '',
    series_number integer,
    description   text   NOT NULL DEFAULT '',
    body_part     text   NOT NULL DEFAULT '',
    laterality    text   NOT NULL DEFAULT ''
);
CREATE INDEX dicom_series_study ON dicom_series (study_uid);
CREATE INDEX dicom_series_modality ON dicom_series (modality);

CREATE SEQUENCE dicom_instance_seq;

CREATE TABLE dicom_instances (
    sop_uid         text        PRIMARY KEY,
    series_uid      text        NOT NULL REFERENCES dicom_series ON DELETE CASCADE,
    study_uid       text        NOT NULL,
    sop_class       text        NOT NULL,
    instance_number integer,
    transfer_syntax text        NOT NULL,
    rows            integer,
    columns         integer,
    frames          integer,
    blob_key        text        NOT NULL,
    size            bigint      NOT NULL,
    -- Where the PixelData value starts in the file and its length (-1:
    -- undefined, i.e. encapsulated); -1/NULL when the instance has none.
    -- A worker streams pixels with one ranged read.
    pixel_offset    bigint,
    pixel_length    bigint,
    seq             bigint      NOT NULL DEFAULT nextval('dicom_instance_seq'), -- renewed on replace
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dicom_instances_series ON dicom_instances (series_uid);
CREATE INDEX dicom_instances_study ON dicom_instances (study_uid, seq);

-- +goose Down
DROP TABLE dicom_instances;
DROP SEQUENCE dicom_instance_seq;
DROP TABLE dicom_series;
DROP TABLE dicom_studies;
