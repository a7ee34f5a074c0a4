-- The shop's IANA time zone (Admin GraphQL `shop { ianaTimezone }`), read by `segflow shops
-- connect` and refreshed on every reconnect; NULL until then. Journeys' quiet hours use it for
-- customers whose address gives no zone (services/tagger/journeys/zones.py).
ALTER TABLE shops ADD COLUMN iana_timezone text;

-- Merchants' own email templates: one per journey and step key, edited through the journeys
-- API. Not versioned (like the shipped templates, an edit reaches in-flight enrolments at
-- once); a version's step says `"template": "own"` to use its journey's row for that key
-- (the API takes and shows it as the step's `own_template`).
CREATE TABLE journey_templates (
    journey_id bigint NOT NULL REFERENCES journeys (id) ON DELETE CASCADE,
    step_key text NOT NULL,
    subject text NOT NULL,
    html text NOT NULL,
    -- NULL: the text part is made from the HTML.
    text text,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (journey_id, step_key)
);
