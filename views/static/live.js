// Live updates for the list and detail pages, from the change stream
// (GET /products/changes, as Server-Sent Events). The pages work without
// it; this only keeps an open page current. Values are written with
// textContent, never as markup.
(function () {
  'use strict';
  var body = document.body;
  var kind = body.dataset.live;
  if (!kind || !window.EventSource) {
    return;
  }
  var indicator = document.getElementById('live');
  var formatter = new Intl.NumberFormat('en-US');

  function status(text, state) {
    if (!indicator) { return; }
    indicator.hidden = false;
    indicator.textContent = text;
    indicator.className = 'live ' + state;
  }

  function missed() {
    var notice = document.getElementById('missed');
    if (notice) { notice.hidden = false; }
  }

  function setCount(count) {
    var element = document.getElementById('count');
    if (element && typeof count === 'number') {
      element.textContent = formatter.format(count);
    }
  }

  // As the pages show a stored time: 2026-11-26 00:12:03 UTC.
  function shownTime(rfc3339) {
    return String(rfc3339).replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC');
  }

  function cell(text, className) {
    var td = document.createElement('td');
    if (className) { td.className = className; }
    td.textContent = text;
    return td;
  }

  function fillRow(row, product) {
    var link = document.createElement('a');
    link.href = '/product?id=' + product.id;
    link.textContent = String(product.id);
    var first = document.createElement('td');
    first.appendChild(link);
    row.replaceChildren(first, cell(product.name), cell(formatter.format(product.price), 'number'),
      cell(product.manufacturer));
    row.dataset.id = String(product.id);
    row.classList.remove('fresh');
    // Restart the highlight on every change.
    void row.offsetWidth;
    row.classList.add('fresh');
  }

  function onList(product) {
    var table = document.getElementById('products');
    if (!table) { return; }
    var rows = table.tBodies[0];
    var row = rows.querySelector('tr[data-id="' + product.id + '"]');
    if (product.deleted) {
      if (row) { row.remove(); }
      return;
    }
    if (row) {
      fillRow(row, product);
      return;
    }
    // A new product shows if it belongs on this page: after its first id
    // and, when the page is full, not past its last. Search results only
    // change the rows they show.
    var after = Number(table.dataset.after || 0);
    var until = table.dataset.until ? Number(table.dataset.until) : Infinity;
    if (table.dataset.search || product.id <= after || product.id > until) {
      return;
    }
    var next = null;
    for (var i = 0; i < rows.rows.length; i++) {
      if (Number(rows.rows[i].dataset.id) > product.id) { next = rows.rows[i]; break; }
    }
    row = document.createElement('tr');
    fillRow(row, product);
    rows.insertBefore(row, next);
    table.hidden = false;
    var empty = document.getElementById('empty');
    if (empty) { empty.hidden = true; }
  }

  function onProduct(product) {
    var article = document.getElementById('product');
    if (!article || Number(article.dataset.id) !== product.id) { return; }
    if (product.deleted) {
      document.getElementById('deleted').hidden = false;
      article.classList.add('gone');
      return;
    }
    article.querySelector('h1').textContent = product.name;
    var fields = {
      price: formatter.format(product.price),
      manufacturer: product.manufacturer,
      description: product.description || 'none',
      updated_at: shownTime(product.updated_at),
      stream_seq: String(product.stream_seq),
      changed_by: product.changed_by || 'a publisher'
    };
    Object.keys(fields).forEach(function (field) {
      var element = article.querySelector('[data-field="' + field + '"]');
      if (element) { element.textContent = fields[field]; }
    });
    document.title = product.name + ' · Products';
    document.getElementById('deleted').hidden = true;
    article.classList.remove('gone');
    article.classList.remove('fresh');
    void article.offsetWidth;
    article.classList.add('fresh');
  }

  // The change stream, as Server-Sent Events: from the page's own position
  // (what it shows), then each change as it is committed. The browser
  // resumes a dropped connection from the last position it saw
  // (Last-Event-ID); a stream that cannot be opened (too many open, or the
  // page is older than the history kept) is tried again a few times, then
  // the page says it may be out of date.
  var last = body.dataset.position;
  var failures = 0;
  function open() {
    var source = new EventSource(last ? '/products/changes?after=' + encodeURIComponent(last)
      : '/products/changes');
    source.addEventListener('open', function () { failures = 0; status('live', 'on'); });
    source.addEventListener('error', function () {
      status('reconnecting…', 'off');
      if (source.readyState !== EventSource.CLOSED) { return; }
      failures += 1;
      if (failures > 3) { missed(); return; }
      window.setTimeout(open, 5000);
    });
    source.addEventListener('up_to_date', function (event) {
      var data = JSON.parse(event.data);
      last = data.position;
      setCount(data.count);
    });
    source.addEventListener('change', function (event) {
      var change = JSON.parse(event.data);
      last = change.position;
      if (change.op === 'clear') { missed(); return; }
      var product = change.op === 'upsert' ? change.product : { id: change.id, deleted: true };
      if (kind === 'list') { onList(product); } else { onProduct(product); }
    });
  }
  open();
}());
