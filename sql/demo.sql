-- The sample schema of `walcast demo`: Directus' `messages`, and a small blog with relations.
CREATE TABLE users (
    id serial PRIMARY KEY,
    name text NOT NULL,
    email text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id serial PRIMARY KEY,
    text text,
    user_id integer REFERENCES users (id),
    date_created timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE articles (
    id serial PRIMARY KEY,
    title text NOT NULL,
    status text NOT NULL DEFAULT 'draft',
    author_id integer REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comments (
    id serial PRIMARY KEY,
    article_id integer NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- previousValues and updatedFields need the whole old row in the WAL.
ALTER TABLE users REPLICA IDENTITY FULL;
ALTER TABLE messages REPLICA IDENTITY FULL;
ALTER TABLE articles REPLICA IDENTITY FULL;
ALTER TABLE comments REPLICA IDENTITY FULL;

INSERT INTO users (name, email) VALUES
    ('Ada', 'ada@example.com'),
    ('Grace', 'grace@example.com');
INSERT INTO messages (text, user_id) VALUES ('Hello from walcast', 1);
INSERT INTO articles (title, status, author_id) VALUES
    ('Streaming the WAL', 'published', 1),
    ('Subscriptions without triggers', 'draft', 2);
INSERT INTO comments (article_id, body) VALUES (1, 'Nice.');
