-- +goose Up
-- Search index tables: narrow rows keyed by the resource's rid, one table per
-- value kind. param is spec.SearchParam.ID (a stable hash of type+code).
-- Rows are rewritten in the same statement as the resource version.

CREATE TABLE idx_string (
    rid   bigint NOT NULL,
    param int    NOT NULL,
    norm  text   NOT NULL, -- lower case, accents removed
    exact text   NOT NULL
);
CREATE INDEX idx_string_search ON idx_string (param, norm text_pattern_ops, rid);
CREATE INDEX idx_string_rid ON idx_string (rid);

CREATE TABLE idx_token (
    rid         bigint NOT NULL,
    param       int    NOT NULL,
    system      text,
    code        text,
    text        text, -- normalised display / CodeableConcept.text / Identifier.type.text
    type_system text, -- Identifier.type, for :of-type
    type_code   text
);
CREATE INDEX idx_token_search ON idx_token (param, code, system, rid);
CREATE INDEX idx_token_rid ON idx_token (rid);

CREATE TABLE idx_reference (
    rid         bigint NOT NULL,
    param       int    NOT NULL,
    target_type text,
    target_id   text,
    url         text -- absolute, urn: or canonical references
);
CREATE INDEX idx_reference_target ON idx_reference (param, target_id, target_type, rid);
CREATE INDEX idx_reference_rev ON idx_reference (target_id, target_type, param, rid);
CREATE INDEX idx_reference_url ON idx_reference (param, url) WHERE url IS NOT NULL;
CREATE INDEX idx_reference_rid ON idx_reference (rid);

CREATE TABLE idx_date (
    rid   bigint      NOT NULL,
    param int         NOT NULL,
    lo    timestamptz NOT NULL, -- the value's range at its precision: [lo, hi)
    hi    timestamptz NOT NULL
);
CREATE INDEX idx_date_search ON idx_date (param, lo, hi, rid);
CREATE INDEX idx_date_rid ON idx_date (rid);

CREATE TABLE idx_number (
    rid   bigint  NOT NULL,
    param int     NOT NULL,
    value numeric NOT NULL
);
CREATE INDEX idx_number_search ON idx_number (param, value, rid);
CREATE INDEX idx_number_rid ON idx_number (rid);

CREATE TABLE idx_quantity (
    rid    bigint NOT NULL,
    param  int    NOT NULL,
    lo     numeric, -- a Quantity has lo = hi; a Range may leave either open
    hi     numeric,
    system text,
    code   text,
    unit   text
);
CREATE INDEX idx_quantity_search ON idx_quantity (param, lo, rid);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);

CREATE TABLE idx_uri (
    rid   bigint NOT NULL,
    param int    NOT NULL,
    value text   NOT NULL
);
CREATE INDEX idx_uri_search ON idx_uri (param, value text_pattern_ops, rid);
CREATE INDEX idx_uri_rid ON idx_uri (rid);

CREATE TABLE idx_composite (
    rid       bigint NOT NULL,
    param     int    NOT NULL,
    a_system  text,
    a_code    text   NOT NULL,
    b_system  text,
    b_code    text,
    b_lo      numeric,
    b_hi      numeric,
    b_date_lo timestamptz,
    b_date_hi timestamptz,
    b_string  text
);
CREATE INDEX idx_composite_search ON idx_composite (param, a_code, rid);
CREATE INDEX idx_composite_rid ON idx_composite (rid);

-- +goose Down
DROP TABLE idx_composite, idx_uri, idx_quantity, idx_number, idx_date, idx_reference, idx_token, idx_string;
