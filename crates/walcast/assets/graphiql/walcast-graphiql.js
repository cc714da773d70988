// walcast's GraphiQL start-up: reads the caller's view of the schema with their token, opens on
// a runnable subscription for one of its tables (?table=NAME, else the first) and shows the
// documentation pane. Subscriptions go over graphql-transport-ws with the token in
// connectionParams; HTTP requests carry it as a bearer token.
(function () {
  'use strict';
  const path = document.getElementById('graphiql').dataset.path;
  const params = new URLSearchParams(location.search);
  const token = params.get('access_token');
  const wanted = params.get('table');
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  // Browsers cannot set headers on a WebSocket: strict mode reads the token from the URL.
  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path
    + (token ? '?access_token=' + encodeURIComponent(token) : '');

  const TYPE_REF = 'kind name ofType { kind name ofType { kind name ofType { kind name } } }';

  async function gql(query, variables) {
    const resp = await fetch(path, {
      method: 'POST',
      headers: Object.assign({ 'Content-Type': 'application/json' }, headers),
      body: JSON.stringify({ query, variables }),
    });
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok || !body || body.errors) {
      const why = body && body.errors ? body.errors.map((e) => e.message).join('; ') : '';
      throw new Error('HTTP ' + resp.status + (why ? ': ' + why : ''));
    }
    return body.data;
  }

  function named(type) {
    let t = type;
    let list = false;
    while (t && t.ofType) {
      if (t.kind === 'LIST') list = true;
      t = t.ofType;
    }
    if (t && t.kind === 'LIST') list = true;
    return { kind: t ? t.kind : null, name: t ? t.name : null, list };
  }

  async function fieldsOf(typeName) {
    const data = await gql(
      'query($n: String!) { __type(name: $n) { fields { name type { ' + TYPE_REF + ' } } } }',
      { n: typeName },
    );
    return (data.__type && data.__type.fields) || [];
  }

  function indent(lines, by) {
    return lines.map((l) => by + l);
  }

  // The runnable document for `table`, and the Prisma 1 form of the same changes as a comment.
  async function documentFor(table, mutatedType, prismaField, others) {
    const payload = await fieldsOf(mutatedType);
    const data = payload.find((f) => f.name === 'data');
    const rowType = data ? named(data.type).name : null;
    const columns = rowType
      ? (await fieldsOf(rowType))
          .filter((f) => {
            const t = named(f.type);
            return !t.list && (t.kind === 'SCALAR' || t.kind === 'ENUM');
          })
          .map((f) => f.name)
      : [];
    const selection = columns.length ? ' { ' + columns.join(' ') + ' }' : '';
    const lines = [
      '# Live changes of `' + table + '`, from the write-ahead log.',
      '# Run it (Ctrl-Enter or the pink button), then insert,',
      '# update or delete rows: each change shows on the right.',
      '# Narrow it down: ' + table + '_mutated(event: "create")',
      '#   or ' + table + '_mutated(where: { COLUMN: VALUE }).',
    ];
    if (others.length) {
      lines.push('# Other tables (&table=NAME in this URL):', '#   ' + others.join(', '));
    }
    lines.push(
      '',
      'subscription {',
      '  ' + table + '_mutated {',
      '    key',
      '    event',
      '    data' + selection,
      '  }',
      '}',
    );
    if (prismaField) {
      lines.push(
        '',
        '# The same changes in the Prisma 1 form:',
        ...indent(
          [
            'subscription {',
            '  ' + table + '(where: { mutation_in: [CREATED, UPDATED, DELETED] }) {',
            '    mutation',
            '    node' + selection,
            '    updatedFields',
            '  }',
            '}',
          ],
          '# ',
        ),
      );
    }
    return lines.join('\n') + '\n';
  }

  async function defaultQuery() {
    let fields;
    try {
      const data = await gql(
        '{ __schema { subscriptionType { fields { name type { ' + TYPE_REF + ' } } } } }',
      );
      fields = (data.__schema.subscriptionType && data.__schema.subscriptionType.fields) || [];
    } catch (e) {
      return '# walcast could not read the schema (' + e.message + ').\n'
        + '# Open this page with ?access_token=YOUR_TOKEN to see your tables.\n';
    }
    const byName = new Map(fields.map((f) => [f.name, f]));
    const tables = fields
      .filter((f) => f.name.endsWith('_mutated'))
      .map((f) => f.name.slice(0, -'_mutated'.length));
    if (!tables.length) {
      return '# walcast: this token sees no table. Its role needs `select = true` on a table\n'
        + '# in the permissions file, and the table must be in the publication.\n';
    }
    const table = tables.includes(wanted) ? wanted : tables[0];
    const mutatedType = named(byName.get(table + '_mutated').type).name;
    const prisma = byName.get(table);
    const prismaField = prisma && /SubscriptionPayload$/.test(named(prisma.type).name || '');
    return documentFor(table, mutatedType, prismaField, tables.filter((t) => t !== table));
  }

  defaultQuery().then((query) => {
    const fetcher = GraphiQL.createFetcher({
      url: location.origin + path,
      subscriptionUrl: wsUrl,
      headers,
      wsConnectionParams: token ? { access_token: token } : {},
    });
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, {
        fetcher,
        defaultQuery: query,
        visiblePlugin: 'Documentation Explorer',
      }),
    );
  });
})();
