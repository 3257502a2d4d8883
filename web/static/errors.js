// Error codes in words: what happened and what to do. The server's own
// message is shown under this sentence, with the details.

const sentences = {
  invalid_request: 'The request is not valid. Check the fields and try again.',
  unauthorized: 'The API needs a valid token. Click “API token” at the top and paste it.',
  not_found: 'It is not there any more, perhaps deleted meanwhile. The list refreshes on its own.',
  conflict: 'That clashes with what is there now. Wait for the list to refresh and try again.',
  pool_not_found: 'That storage pool does not exist. Pick another pool, or create it with POST /v1/pools.',
  catalog_entry_not_found: 'That image is not in the catalog any more. Reload the page to see the current catalog.',
  no_node_available: 'No online node serves this pool. Start the node agent of one of its nodes, or pick another pool.',
  node_unreachable: 'The node could not be reached. Check that its node agent runs and that the network to it works.',
  url_forbidden: 'This URL is not allowed: only http and https to public addresses are. Use such a URL, or start the node agents with --allow-private-networks.',
  upstream_not_found: 'The file is not at that URL: the server answered “not found”. Check the URL; the vendor may have moved the image.',
  upstream_error: 'The server that holds the image failed to send it. Try again later, or use another mirror.',
  checksum_mismatch: 'The file did not match its checksum, so it was thrown away. Check the checksum, then download again.',
  checksum_unavailable: 'The checksum is not available: the vendor’s checksum file could not be fetched, or does not list this file. Try later, or download from a URL with its checksum.',
  not_a_disk_image: 'The file is not a disk image (qcow2 or raw); the URL may lead to a web page. Check the URL.',
  disk_full: 'The storage pool is full. Delete images you no longer need, or pick another pool.',
  cancelled: 'The download was cancelled.',
  internal: 'Something went wrong inside cloudimages. The API and worker logs say more; trying again may help.',
  temporal_unavailable: 'Temporal cannot be reached, so downloads cannot start or report. Check that the Temporal server runs.',
  payload_too_large: 'The request is too large. Shorten the fields and try again.',
  method_not_allowed: 'The API does not allow that here. Reload the page: it may be out of date with the API.',
  unsupported_media_type: 'The API expected JSON. Reload the page: it may be out of date with the API.',
  unprocessable: 'The request is valid but cannot be carried out. Read the details below.',
  forbidden: 'The API refused the request: it came from another web page (a different origin). Open the UI from the API’s own address.',
  unsafe_image: 'The image was refused as unsafe: it would make a VM read files outside itself (a backing file, an external data file or extent). Use the vendor’s self-contained image.',
  format_mismatch: 'The file is not in the format its source declared. Check the URL and the declared format.',
  signature_invalid: 'The vendor’s checksum file is not signed by a key its catalog entry trusts, or was changed after it was signed, so none of its checksums is trusted and nothing was downloaded. Try again later; if it persists, the mirror may be tampered with — the details say which key signed.',
  conversion_failed: 'The image could not be converted to the pool’s format. Check that qemu-img is installed on the node and that the pool has room.',
  too_large: 'The image is larger than declared or than the pool may take (its size limit or free-space reserve). Check the size, or free space in the pool.',
  upload_expired: 'The upload received nothing for too long (--upload-ttl) and was removed. Upload the file again.',
  network: 'The cloudimages API cannot be reached. Check that it runs; this page keeps trying on its own.',
};

/** Returns the sentence for an error code. */
export function sentence(code) {
  return sentences[code] || 'The request failed (' + code + ').';
}

/** Returns {title, detail} for an ApiError or an image's {code, message}. */
export function explain(err) {
  const code = (err && err.code) || 'internal';
  const title = sentence(code);
  const message = (err && err.message) || '';
  const same = (a, b) => a.toLowerCase().replace(/[.\s]+$/, '') === b.toLowerCase().replace(/[.\s]+$/, '');
  return { code, title, detail: message && !same(message, title) ? message : '' };
}
