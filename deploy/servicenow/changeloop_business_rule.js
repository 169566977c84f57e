/*
 * changeloop: send approved change. Outbound Business Rule on change_request.
 *
 * @name       changeloop: send approved change
 * @table      change_request
 * @when       after
 * @order      100
 * @insert     true
 * @update     true
 * @condition  current.approval.changesTo('approved') || (current.type == 'standard' && current.approval == 'approved' && current.state.changesTo('-2'))
 *
 * Sends the change to the changeloop starter shim, which starts (or finds) the Temporal workflow
 * `change-<number>`. The shim answers 202 at once; a repeat for the same change is harmless. The body is a
 * hint: changeloop re-reads the change before it touches anything.
 *
 * POST {x_changeloop.shim_url}/api/servicenow/change
 * Authorization: Bearer {x_changeloop.webhook_token}   (the `servicenow` principal: scope change:webhook)
 *
 * The JSON body has exactly these fields (the sandbox emulator sends the same set:
 * sandbox/outbound_rules.py):
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
        // The REST message record holds the transport settings (MID Server, timeouts); the endpoint comes
        // from x_changeloop.shim_url so it has one home.
        var request = new sn_ws.RESTMessageV2('changeloop shim', 'post');
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
