-- usersvc schema, version 3: the teams and organizations a personal API key is limited to.
-- JSON arrays (team ids; organization uuids as the client sent them), NULL when the key is not
-- limited. They do not restrict /api/users/ (reference §3.3); they are kept so that a client
-- reads back what it set, as upstream returns them.
ALTER TABLE personal_api_keys ADD COLUMN scoped_teams TEXT;
ALTER TABLE personal_api_keys ADD COLUMN scoped_organizations TEXT;
