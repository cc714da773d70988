-- What walcast needs from a database, for an administrator to run by hand if walcast's role
-- may not do it itself. Adjust the role and table names.

-- postgresql.conf (restart needed): wal_level = logical
ALTER SYSTEM SET wal_level = logical;

-- A role that may read a replication slot and the exposed tables.
CREATE ROLE walcast WITH LOGIN REPLICATION PASSWORD 'change-me';
GRANT USAGE ON SCHEMA public TO walcast;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO walcast;

-- walcast creates this publication when it is missing (needs table ownership); or create it here.
CREATE PUBLICATION walcast FOR TABLE public.messages;
