/*
 * changeloop — outbound Business Rule on change_request.
 *
 * Table: Change Request [change_request]   When: after   Insert: true   Update: true   Advanced: true
 * Condition (Advanced, "Condition" field):
 *   current.approval.changesTo('approved') ||
 *   (current.type == 'standard' && current.approval == 'approved' && current.state.changesTo('-2'))
 *
 * Sends the change to the changeloop starter shim, which starts (or finds) the Temporal workflow
 * `change-<number>`. The shim answers 202 at once; a repeat for the same change is harmless.
 *
 * System properties (sys_properties):
 *   x_changeloop.shim_url       base URL of the shim, e.g. https://changeloop.example.com (no trailing slash)
 *   x_changeloop.webhook_token  the shim's shared secret (CHANGELOOP_WEBHOOK_TOKEN); type "password2"
 *
 * The JSON body has exactly these fields (the sandbox emulator sends the same set:
 * sandbox/business_rules.py WEBHOOK_FIELDS):
 *   sys_id, number, state, type, approval, category, short_description,
 *   cmdb_ci, cmdb_ci_name, std_change_producer_version, std_change_producer_version_name
 * Values are stored values (references as sys_ids) plus two display names.
 */
(function executeRule(current, previous /*null when async*/) {
    var shimUrl = gs.getProperty('x_changeloop.shim_url', '');
    var token = gs.getProperty('x_changeloop.webhook_token', '');
    if (!shimUrl || !token) {
        gs.warn('changeloop: x_changeloop.shim_url or x_changeloop.webhook_token is not set; ' +
            current.getValue('number') + ' was not sent');
        return;
    }

    var body = {};
    body.sys_id = current.getUniqueValue();
    body.number = current.getValue('number') || '';
    body.state = current.getValue('state') || '';
    body.type = current.getValue('type') || '';
    body.approval = current.getValue('approval') || '';
    body.category = current.getValue('category') || '';
    body.short_description = current.getValue('short_description') || '';
    body.cmdb_ci = current.getValue('cmdb_ci') || '';
    body.cmdb_ci_name = current.getDisplayValue('cmdb_ci') || '';
    body.std_change_producer_version = current.getValue('std_change_producer_version') || '';
    body.std_change_producer_version_name = current.getDisplayValue('std_change_producer_version') || '';

    try {
        var request = new sn_ws.RESTMessageV2();
        request.setEndpoint(shimUrl + '/api/servicenow/change');
        request.setHttpMethod('POST');
        request.setRequestHeader('Content-Type', 'application/json');
        request.setRequestHeader('Authorization', 'Bearer ' + token);
        request.setRequestBody(JSON.stringify(body));
        // Asynchronous: the approval that triggered this rule never waits for (or fails with) the shim.
        request.executeAsync();
    } catch (e) {
        gs.error('changeloop: could not send ' + body.number + ': ' + e.message);
    }
})(current, previous);
