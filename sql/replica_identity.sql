-- previousValues and updatedFields need the old row in the WAL. walcast never runs this itself:
-- replace the table name and run it once per table (it costs more WAL on UPDATE and DELETE).
ALTER TABLE public.messages REPLICA IDENTITY FULL;
